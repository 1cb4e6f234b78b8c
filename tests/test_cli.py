"""genzoo.cli's way out: a finished command skips the interpreter's teardown (seconds per stage), but leaves as
sys.exit would: its status, all of its output, its exit handlers and its other threads' work."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

GENZOO = [sys.executable, "-m", "genzoo"]


def test_a_command_ends_with_its_status_its_whole_output_and_its_exit_handlers(tmp_path):
    env = {**os.environ, "GENZOO_TRACE_IMPORTS": str(tmp_path / "trace")}  # written by an exit handler
    helped = subprocess.run([*GENZOO, "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert helped.returncode == 0, helped.stderr
    assert "Usage" in helped.stdout and helped.stdout.rstrip().endswith("╯")  # the help's box, to its last line
    assert len(list((tmp_path / "trace").glob("*.json"))) == 1
    failed = subprocess.run([*GENZOO, "train", "no_such_model"], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "error: unknown model 'no_such_model'" in failed.stderr
    misused = subprocess.run([*GENZOO, "no_such_command"], capture_output=True, text=True, timeout=300)
    assert misused.returncode == 2 and "No such command" in misused.stderr


def test_leaving_waits_for_other_threads_and_says_a_message_status(tmp_path):
    done = tmp_path / "written_by_a_thread"
    script = textwrap.dedent(f"""
        import threading, time
        from genzoo.cli import _leave

        def late():
            time.sleep(0.5)
            open({str(done)!r}, "w").write("done")

        threading.Thread(target=late).start()
        print("buffered, not yet flushed", end="")
        _leave("a message")
    """)
    left = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert (left.returncode, left.stdout, left.stderr.strip()) == (1, "buffered, not yet flushed", "a message")
    assert done.read_text() == "done"
