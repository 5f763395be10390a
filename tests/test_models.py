"""Every registered model: shape, finiteness, a backward pass; exact parameter counts of the study's networks."""
import pytest
import torch

from reslab.models import ProjectionUnit, ResidualUnit, create_model, list_models


def n_trainable(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def n_running_stats(m: torch.nn.Module) -> int:
    return sum(b.numel() for name, b in m.named_buffers() if name.endswith(("running_mean", "running_var")))


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("image_size", [32, 64])
def test_every_registered_model_runs(name, image_size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, image_size=image_size)
    x = torch.rand(3, 3, image_size, image_size)
    out = model(x)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_plain_cnn_matches_the_published_summary():
    assert n_trainable(create_model("baseline", num_classes=19, image_size=128)) == 3_491_603


def test_plain_cnn_pools_before_relu_with_the_study_s_values_and_gradients():
    """ReLU after max-pool (the fast order) = the study's conv -> ReLU -> pool, forward and backward."""
    torch.manual_seed(0)
    model = create_model("baseline", num_classes=5, image_size=32).eval()  # eval: no dropout draw
    c = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    relu, pool = torch.relu, torch.nn.functional.max_pool2d

    def study_order(x):
        x = pool(relu(c[0](x)), 2)
        x = pool(relu(c[2](relu(c[1](x)))), 2)
        x = pool(relu(c[4](relu(c[3](x)))), 2)
        return model.head(x)

    x = torch.randn(4, 3, 32, 32)
    fast = model(x)
    grads_fast = torch.autograd.grad(fast.square().sum(), list(model.parameters()))
    ref = study_order(x)
    grads_ref = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
    torch.testing.assert_close(fast, ref, rtol=0, atol=0)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b)
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 6  # one per conv + the dense layer


def test_resnet_matches_the_study():
    model = create_model("resnet", num_classes=19, image_size=128)
    assert n_trainable(model) == 1_157_011
    assert n_running_stats(model) == 256
    assert n_trainable(model) + n_running_stats(model) == 1_157_267


def test_unit_counts_from_the_issue():
    unit = ResidualUnit(3)
    assert n_trainable(unit) == 180
    assert n_trainable(unit) + n_running_stats(unit) == 192
    proj = ProjectionUnit(3, 16)
    assert n_trainable(proj) + n_running_stats(proj) == 620


def test_residual_unit_is_identity_plus_body():
    unit = ResidualUnit(4).eval()
    torch.nn.init.zeros_(unit.body[-1].weight)
    torch.nn.init.zeros_(unit.body[-1].bias)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(unit(x), x)  # zero body: the shortcut carries the input through untouched


def test_resnet_is_built_from_depths_and_widths():
    model = create_model("resnet", num_classes=5, image_size=64, depths=(2, 1, 1), widths=(16, 32, 64), head="gap")
    kinds = [type(m).__name__ for m in model.stages]
    assert kinds == ["ProjectionUnit", "ResidualUnit", "Conv2d", "ProjectionUnit", "Conv2d", "ProjectionUnit"]
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 5)


def test_shortcut_false_removes_every_shortcut():
    with_sc = create_model("resnet_deep", num_classes=5, image_size=32)
    plain = create_model("plain_deep", num_classes=5, image_size=32)
    assert n_trainable(with_sc) - n_trainable(plain) == sum(
        p.numel() for m in with_sc.modules() if isinstance(m, ProjectionUnit) for p in m.project.parameters())


@pytest.mark.parametrize("bad, match", [
    (dict(name="vgg"), "registered models: baseline"),
    (dict(name="resnet", depth=3), "unexpected keyword"),
    (dict(name="resnet", head="max"), "head 'max'"),
    (dict(name="resnet", depths=(1,), widths=(32, 64)), "equal length"),
])
def test_bad_model_requests_name_what_is_wrong(bad, match):
    with pytest.raises(ValueError, match=match):
        create_model(bad.pop("name"), num_classes=3, image_size=64, **bad)
