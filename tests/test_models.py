"""Every registered model: shape, finiteness, a backward pass; exact parameter counts of the study's networks."""
import pytest
import torch

from reslab.models import BasicBlock, ProjectionUnit, ResidualUnit, ShortcutA, create_model, list_models


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


# He et al. 2016's CIFAR nets (models/cifar.py): the plain and residual families of depth 6n + 2

CIFAR_DEPTHS = (8, 14, 20, 32, 44, 56, 110)


def cifar_hand_count(depth: int, widths=(16, 32, 64), num_classes: int = 10) -> int:
    """The parameters of a CIFAR net by hand: convs have no bias (BN follows), BN has gamma and beta, option-A
    shortcuts have none, so the plain and residual nets of a depth count the same."""
    n = (depth - 2) // 6
    total = 3 * 9 * widths[0] + 2 * widths[0]  # stem: 3x3 conv 3 -> 16, BN
    chans = widths[0]
    for width in widths:
        for _ in range(n):
            total += 9 * chans * width + 2 * width  # conv1 3x3 (chans -> width, the stride does not count) + BN
            total += 9 * width * width + 2 * width  # conv2 3x3 + BN
            chans = width
    return total + widths[-1] * num_classes + num_classes  # linear head on the pooled 64 channels


def test_the_hand_count_is_resnet_20_s_published_size():
    assert cifar_hand_count(20) == 269_722  # He et al. 2016, Table 6: ResNet-20, 0.27M
    assert round(cifar_hand_count(110) / 1e6, 1) == 1.7  # ResNet-110, 1.7M


@pytest.mark.parametrize("family", ["cifar_plain", "cifar_resnet"])
@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_parameter_counts_match_the_hand_count(family, depth):
    model = create_model(family, num_classes=10, image_size=32, depth=depth)
    assert n_trainable(model) == cifar_hand_count(depth)
    n = (depth - 2) // 6
    assert n_running_stats(model) == 2 * (16 + 2 * n * (16 + 32 + 64))  # a BN after every conv: mean and var


@pytest.mark.parametrize("depth", range(8, 57, 6))
def test_both_cifar_families_train_at_every_depth(depth):
    torch.manual_seed(0)
    for family in ("cifar_plain", "cifar_resnet"):
        model = create_model(family, num_classes=4, image_size=16, depth=depth)
        blocks = [m for m in model.stages if isinstance(m, BasicBlock)]
        assert len(blocks) == (depth - 2) // 2 and 1 + 2 * len(blocks) + 1 == depth  # stem + 2 per block + head
        out = model(torch.rand(2, 3, 16, 16))
        assert out.shape == (2, 4) and torch.isfinite(out).all()
        out.logsumexp(1).mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_plain_and_residual_nets_differ_only_in_the_addition():
    plain = create_model("cifar_plain", num_classes=5, image_size=32, depth=14)
    residual = create_model("cifar_resnet", num_classes=5, image_size=32, depth=14)
    residual.load_state_dict(plain.state_dict())  # the same parameters and buffers, name for name
    x = torch.rand(2, 3, 32, 32)
    plain.eval()
    residual.eval()
    for block in residual.stages:  # a body of zeros leaves the shortcut: the block passes relu(shortcut(x)) on
        torch.nn.init.zeros_(block.bn2.weight)
    stem = residual.stem(x)
    assert torch.equal(residual.stages(stem), torch.relu(ShortcutA(16, 64, 4)(stem)))
    assert not torch.equal(plain(x), residual(x))


def test_option_a_shortcut_subsamples_and_pads_with_zeros():
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    out = ShortcutA(16, 32, 2)(x)
    assert out.shape == (2, 32, 2, 2)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()
    assert sum(p.numel() for p in ShortcutA(16, 32, 2).parameters()) == 0


@pytest.mark.parametrize("depth", [6, 9, 21, 0])
def test_a_depth_not_of_the_form_6n_plus_2_names_the_valid_depths(depth):
    with pytest.raises(ValueError, match=r"valid depths: 8, 14, 20, 26, 32"):
        create_model("cifar_resnet", num_classes=3, image_size=32, depth=depth)
