"""weft.Trainer in one process: the loss curve of `weft train` bit for bit, parameters written from NumPy are the
ones trained, views are weft's own storage, checkpoints round-trip, plans match the CLI, errors carry weft's
message and exit-code class."""
import json
import subprocess

import numpy as np
import pytest

import weft
from conftest import TINY, cli_losses, weft_binary

SMALL = {"train.steps": 6, "train.global_batch": 8, "train.micro_batch": 4}


def test_loss_curve_equals_weft_train_bit_for_bit(tmp_path):
    trainer = weft.Trainer(TINY, {"train.steps": 10})
    losses = [metrics["loss"] for metrics in trainer.train()]
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert losses == cli_losses(tmp_path, 1, {"train.steps": 10})  # floats compared exactly


def test_metrics_are_the_lines_weft_train_writes():
    metrics = weft.Trainer(TINY, SMALL).step()
    assert metrics["step"] == 1
    assert set(metrics) >= {"loss", "lr", "step_ms", "tokens_per_s", "mfu", "mem", "comm_bytes"}
    assert set(metrics["mem"]) >= {"params", "grads", "optimizer", "activations", "peak"}


def test_parameters_written_from_numpy_are_the_ones_trained(tmp_path):
    # The reference starts from another seed's weights through an independent path: weft's Hugging Face export and
    # checkpoint.init_from. Same data order (train.seed) on both sides.
    other = weft.Trainer(TINY, {**SMALL, "train.seed": 99})
    other.save(tmp_path / "ckpt")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({  # tiny.yaml's model as Hugging Face names it
        "model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 256, "n_positions": 64}))
    subprocess.run([weft_binary(), "ckpt", "export", str(tmp_path / "ckpt" / "step_00000000"), "--safetensors",
                    str(tmp_path / "hf" / "model.safetensors")], check=True, capture_output=True)
    reference = weft.Trainer(TINY, {**SMALL, "checkpoint.init_from": tmp_path / "hf"})
    expected = [m["loss"] for m in reference.train(3)]

    through_views = weft.Trainer(TINY, SMALL)
    untouched = [m["loss"] for m in weft.Trainer(TINY, SMALL).train(3)]
    weights = other.parameters()
    for name, view in through_views.parameters().items():
        view[...] = weights[name]
    assert [m["loss"] for m in through_views.train(3)] == expected

    through_copies = weft.Trainer(TINY, SMALL)
    for name in through_copies.names():
        through_copies.set_parameter(name, other.get_parameter(name))
    assert [m["loss"] for m in through_copies.train(3)] == expected
    assert expected != untouched  # the writes mattered


def test_views_are_weft_storage_and_see_each_step():
    trainer = weft.Trainer(TINY, SMALL)
    name = trainer.names()[0]
    view = trainer.parameters()[name]
    assert view.shape == trainer.shape(name) == (256, 64) and view.dtype == np.float32
    before = view.copy()
    trainer.step()
    assert not np.array_equal(view, before)  # AdamW updated the storage the view shows
    assert np.array_equal(view, trainer.get_parameter(name))
    gradient = trainer.gradients()[name]
    assert np.array_equal(gradient, trainer.get_gradient(name)) and np.abs(gradient).max() > 0
    assert not view.flags.owndata


def test_save_load_resumes_bit_for_bit_and_inspect_describes_it(tmp_path):
    first = weft.Trainer(TINY, SMALL)
    list(first.train(3))
    first.save(tmp_path)
    later = [m["loss"] for m in first.train(2)]
    described = weft.inspect_checkpoint(tmp_path / "step_00000003")
    assert described["step"] == 3 and described["layout"]["world_size"] == 1
    assert described["model"]["d_model"] == 64 and "wte.weight" in described["tensors"]

    second = weft.Trainer(TINY, SMALL)
    assert second.load(tmp_path) == 3 and second.steps_done == 3
    assert [m["loss"] for m in second.train(2)] == later
    assert second.steps_done == 5 and len(list(second.train())) == 1  # up to train.steps


def test_plan_is_weft_plan_json():
    cli = subprocess.run([weft_binary(), "plan", TINY, "-n", "4", "--set", "parallel.zero=2", "--json"], check=True,
                         capture_output=True, text=True).stdout
    assert weft.plan(TINY, 4, {"parallel.zero": 2}) == json.loads(cli)
    assert weft.Trainer(TINY, SMALL).plan()["world_size"] == 1


def test_configs_as_text_or_dict_train_like_the_file():
    with open(TINY) as f:
        text = f.read()
    from_text = [m["loss"] for m in weft.Trainer(text, SMALL).train(2)]
    config = {"model": {"layers": 2, "d_model": 64, "heads": 4, "vocab_size": 256, "seq_len": 64},
              "train": {"lr": 3.0e-3, "warmup_steps": 10, "seed": 1234}}
    from_dict = [m["loss"] for m in weft.Trainer(config, SMALL).train(2)]
    assert from_text == from_dict == [m["loss"] for m in weft.Trainer(TINY, SMALL).train(2)]


def test_errors_are_exceptions_with_weft_messages_and_exit_code_classes():
    with pytest.raises(weft.ConfigError, match="train.stepz") as bad_key:
        weft.Trainer(TINY, {"train.stepz": 3})
    assert bad_key.value.exit_code == 2 and isinstance(bad_key.value, ValueError)
    with pytest.raises(weft.ConfigError, match="parallel.tp"):
        weft.Trainer(TINY, {"parallel.tp": 3})
    with pytest.raises(weft.ConfigError, match="<yaml text>:2"):
        weft.Trainer("model: {layers: 2}\nbogus: 1\n")
    trainer = weft.Trainer(TINY, SMALL)
    with pytest.raises(weft.ConfigError, match="no parameter named 'nope'"):
        trainer.get_parameter("nope")
    with pytest.raises(weft.ConfigError, match="holds 3 values but the parameter has 16384"):
        trainer.set_parameter(trainer.names()[0], np.zeros(3))
    with pytest.raises(weft.ConfigError, match="holding a complete one"):
        trainer.load("/nonexistent")
    with pytest.raises(weft.ConfigError, match="16 bits"):
        weft.Trainer(TINY, {**SMALL, "precision.compute": "bf16"}).parameters()
    assert weft.PeerFailure("x").exit_code == 3 and weft.WeftError("x").exit_code == 1
    trainer.close()
    with pytest.raises(ValueError, match="closed"):
        trainer.step()


def test_log_lines_reach_the_python_callback():
    lines = []
    weft.set_log_callback(lambda level, message: lines.append((level, message)))
    try:
        weft.Trainer(TINY, {**SMALL, "train.log_every": 1}).step()
    finally:
        weft.set_log_callback(None)
    assert any(level == 2 and message.startswith("step 1/6 | loss") for level, message in lines), lines


def test_backward_then_apply_is_a_step_and_gradients_can_be_replaced_in_between():
    whole, split = weft.Trainer(TINY, SMALL), weft.Trainer(TINY, SMALL)
    with pytest.raises(weft.ConfigError, match="no gradients to apply"):
        split.apply()
    expected = whole.step()
    split.backward()
    with pytest.raises(weft.ConfigError, match="waiting"):
        split.backward()
    got = split.apply()
    assert got["loss"] == expected["loss"] and got["grad_norm"] == expected["grad_norm"]

    # Zero gradients everywhere at a first step: Adam's moments start at 0 and stay there, so only decoupled weight
    # decay moves a parameter.
    split = weft.Trainer(TINY, SMALL)
    split.backward()
    grads = split.gradients()
    assert not grads["wte.weight"].flags.owndata  # ZeRO 0, fp32: views
    before = {name: split.get_parameter(name) for name in split.names()}
    for name in split.names():
        split.set_gradient(name, np.zeros(split.shape(name), dtype=np.float32))
    assert not grads["wte.weight"].any()  # the view shows the written gradient
    with pytest.raises(weft.ConfigError, match="shape"):
        split.set_gradient("wte.weight", np.zeros(3, dtype=np.float32))
    metrics = split.apply()
    assert metrics["grad_norm"] == 0
    lr = np.float32(metrics["lr"])
    decayed = before["wte.weight"] - lr * (np.float32(0.1) * before["wte.weight"])  # tiny.yaml: weight_decay 0.1
    np.testing.assert_allclose(split.get_parameter("wte.weight"), decayed, rtol=0, atol=1e-7)
    assert np.array_equal(split.get_parameter("ln_f.bias"), before["ln_f.bias"])  # biases do not decay
    with pytest.raises(weft.ConfigError, match="already applied"):
        split.set_gradient("wte.weight", np.zeros((256, 64), dtype=np.float32))


def test_gradients_under_zero_2_and_bf16_are_fp32_copies_of_the_zero_0_gradient():
    reference = weft.Trainer(TINY, SMALL)
    reference.backward()
    want = {name: g.copy() for name, g in reference.gradients().items()}
    for overrides, tolerance in (({"parallel.zero": 2}, 1e-5), ({"precision.compute": "bf16"}, 3e-2)):
        trainer = weft.Trainer(TINY, {**SMALL, **overrides})
        trainer.backward()
        got = trainer.gradients()
        assert set(got) == set(want)
        for name, g in got.items():
            assert g.dtype == np.float32 and g.flags.owndata  # copies
            # fp32: the micro-batches summed in another grouping (1e-5, contract.md); bf16 keeps 8 bits
            assert np.abs(g - want[name]).max() <= tolerance * np.abs(want[name]).max(), (overrides, name)


def test_eval_every_puts_the_val_loss_of_weft_train_into_the_step_metrics(tmp_path):
    overrides = {**SMALL, "train.eval_every": 2, "train.eval_batches": 2, "data.valid_fraction": 0.1}
    trainer = weft.Trainer(TINY, overrides)
    library = {m["step"]: m["val_loss"] for m in trainer.train() if "val_loss" in m}
    metrics = tmp_path / "cli.jsonl"
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    subprocess.run([weft_binary(), "train", TINY, *sets, "--metrics", str(metrics)], check=True, capture_output=True)
    cli = {line["step"]: line["val_loss"] for line in map(json.loads, metrics.read_text().splitlines())
           if "val_loss" in line}
    assert library == cli and sorted(cli) == [2, 4, 6]  # floats compared exactly
