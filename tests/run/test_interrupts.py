"""Stop signals (diffrestore/run/interrupts.py and the engine's saving): SIGTERM is handled like Ctrl-C, a signal that
lands while one image's files are written waits until they all are, and a second one takes back that image's new
files. The end-to-end runs (real processes, real signals) are in tests/cli/test_commands_subprocess.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from diffrestore.run import engine, interrupts, plan


def test_sigterm_raises_interrupted_and_the_old_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(interrupts.Interrupted) as stop, interrupts.stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)  # a signal to oneself is handled before os.kill returns
    assert stop.value.signum == signal.SIGTERM and stop.value.exit_code == 143
    assert isinstance(stop.value, KeyboardInterrupt)  # every `except KeyboardInterrupt` treats it as Ctrl-C
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_ignored_sigint_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_while_saving_waits_for_the_end_of_the_block_and_a_second_one_does_not() -> None:
    reached = []
    with pytest.raises(interrupts.Interrupted) as stop, interrupts.stop_on_signals(), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the first signal")  # deferred: the block goes on
    assert reached and stop.value.signum == signal.SIGTERM
    with pytest.raises(interrupts.Interrupted), interrupts.stop_on_signals(), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("never: the second signal stops at once")
    assert len(reached) == 1


def test_an_image_stopped_mid_save_leaves_none_of_its_new_files(tmp_path, monkeypatch) -> None:
    from diffrestore import imageio

    item = plan.Item(index=0, input=tmp_path / "a.png", output=tmp_path / "a_x.png",
                     samples=[tmp_path / "a_x_s1.png", tmp_path / "a_x_s2.png"], std_map=tmp_path / "a_x_std.png")
    old = tmp_path / "a_x_s2.png"
    old.write_bytes(b"an earlier sample, replaced under --overwrite: never deleted")
    real = imageio.save_image

    def stop_at_the_main_output(image, path, **kwargs):
        if Path(path) == item.output:
            raise interrupts.Interrupted(signal.SIGINT)
        return real(image, path, **kwargs)

    monkeypatch.setattr(imageio, "save_image", stop_at_the_main_output)
    x = torch.zeros(2, 3, 4, 5)
    result = engine.Restored(image=x[:1], samples=x, std=torch.zeros(1, 1, 4, 5), measurement=x[:1],
                             reference=None, metrics={})
    with pytest.raises(interrupts.Interrupted):
        engine._save(item, None, result, overwrite=True, protected=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_x_s2.png"]


def test_a_signal_before_the_inputs_are_planned_exits_with_its_code(tmp_path, capsys, monkeypatch) -> None:
    from cli_support import run_main, write_image

    def stopped(*args, **kwargs):
        raise interrupts.Interrupted(signal.SIGTERM)

    monkeypatch.setattr(plan, "plan_run", stopped)  # typer wraps what a command raises: the code must survive
    result = run_main(["denoise", write_image(tmp_path / "a.png"), "--device", "cpu"], capsys)
    assert result.code == 143
    assert result.err == "error: interrupted (SIGTERM)\n"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_stops_a_run_like_sigterm_with_exit_129() -> None:
    seen = []
    # A harmless handler first: were SIGHUP not taken over, the default action would end the test process.
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(interrupts.Interrupted) as stop, interrupts.stop_on_signals():
            os.kill(os.getpid(), signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) is not interrupts._handler  # given back after the block
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert not seen
    assert stop.value.signum == signal.SIGHUP and stop.value.exit_code == 129 and stop.value.name == "SIGHUP"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_sighup_ignored_by_nohup_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts.stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
