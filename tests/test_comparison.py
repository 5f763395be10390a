"""The replicated comparison on constructed replicates: aggregation, the champion rule, the report and its JSON."""
import json

import numpy as np
import pytest

from reslab.comparison import Replicate, choose_champion, compare, comparison_markdown, metrics_summary
from reslab.config import EvaluateConfig

CLASSES = ["a", "b", "c"]
LABELS = np.arange(60) % 3


def logits_with(correct: np.ndarray) -> np.ndarray:
    """Logits that put the true class first where `correct`, the next class otherwise."""
    pred = np.where(correct, LABELS, (LABELS + 1) % 3)
    out = np.zeros((len(LABELS), 3), np.float32)
    out[np.arange(len(LABELS)), pred] = 5.0
    return out


def replicate(role: str, seed: int, n_correct: int, val_acc: float, val_loss: float = 0.5,
              stopped_early: bool = False) -> Replicate:
    correct = np.arange(len(LABELS)) < n_correct
    return Replicate(role=role, seed=seed, model=role, run_id=f"{role}-{seed}", model_uri=f"models:/{role}{seed}",
                     train={"best_val_accuracy": val_acc, "best_val_loss": val_loss, "best_epoch": 3,
                            "epochs_trained": 5 if stopped_early else 8, "stopped_early": stopped_early},
                     logits=logits_with(correct))


def study(test_resnet=(58, 59, 60), test_cnn=(20, 21, 22), val_resnet=(0.7, 0.71, 0.72), val_cnn=(0.8, 0.81, 0.9)):
    return {"baseline": [replicate("baseline", s, t, v, stopped_early=s == 1)
                         for s, t, v in zip((1, 2, 3), test_cnn, val_cnn)],
            "resnet": [replicate("resnet", s, t, v) for s, t, v in zip((1, 2, 3), test_resnet, val_resnet)]}


def test_champion_follows_validation_not_test():
    reps = study()  # the ResNet wins on test, the CNN on validation
    ch = choose_champion(reps)
    assert ch["role"] == "baseline" and ch["seed"] == 3  # best family on mean val, then best val replicate
    result = compare(reps, LABELS, CLASSES, EvaluateConfig(n_bootstrap=500), seed=0)
    assert result["champion"]["role"] == "baseline"
    assert result["comparison"]["verdict"]["winner"] == "ResNet"  # while the test split says the opposite


def test_champion_ties_break_on_loss_then_seed():
    reps = study(val_resnet=(0.8, 0.81, 0.9))
    reps["resnet"] = [replicate("resnet", s, 50, 0.9 if s != 1 else 0.8, val_loss=0.4) for s in (1, 2, 3)]
    reps["baseline"] = [replicate("baseline", s, 40, 0.9 if s != 1 else 0.8, val_loss=0.6) for s in (1, 2, 3)]
    ch = choose_champion(reps)
    assert (ch["role"], ch["seed"]) == ("resnet", 2)


def test_aggregates_per_replicate_and_over_seeds():
    result = compare(study(), LABELS, CLASSES, EvaluateConfig(n_bootstrap=500), seed=0)
    cnn = result["models"]["baseline"]
    assert [r["accuracy"] for r in cnn["replicates"]] == pytest.approx([20 / 60, 21 / 60, 22 / 60])
    assert cnn["summary"]["accuracy"]["mean"] == pytest.approx(21 / 60)
    assert cnn["cap_bound"] == 2  # seed 1 stopped early, seeds 2 and 3 ran to the cap
    assert [r["ended_by"] for r in cnn["replicates"]] == ["early stopping", "epoch cap", "epoch cap"]
    c = result["comparison"]
    assert c["differences"] == pytest.approx([38 / 60, 38 / 60, 38 / 60])
    assert c["sign_count"]["n_b_better"] == 3 and c["probability_of_improvement"]["probability"] == 1.0


def test_roles_must_share_seeds():
    reps = study()
    reps["resnet"] = reps["resnet"][:2]
    with pytest.raises(ValueError, match="different seeds"):
        compare(reps, LABELS, CLASSES, EvaluateConfig(n_bootstrap=200), seed=0)


def test_report_and_metrics_with_one_replicate_are_clean():
    reps = {role: reps[:1] for role, reps in study().items()}
    result = compare(reps, LABELS, CLASSES, EvaluateConfig(n_bootstrap=200), seed=0)
    summary = metrics_summary(result)
    text = json.dumps(summary, allow_nan=False)  # NaN (no sd with one replicate) becomes null
    assert '"accuracy_sd": null' in text
    md = comparison_markdown(result, "promoted")
    assert "n/a (1 replicate)" in md and "Verdict:" in md and "Rule:" in md


def test_report_states_verdict_rule_and_champion():
    result = compare(study(), LABELS, CLASSES, EvaluateConfig(n_bootstrap=500), seed=0)
    md = comparison_markdown(result, "not promoted: experiment")
    assert md.count("| 1 |") + md.count("| 2 |") + md.count("| 3 |") >= 3  # one row per seed
    assert "ResNet better" in md and "not promoted: experiment" in md and "without the test split" in md
    summary = metrics_summary(result)
    assert summary["comparison"]["verdict"] == "ResNet better" and summary["champion"] == {"role": "baseline",
                                                                                           "seed": 3}
