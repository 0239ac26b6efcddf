"""The error stored for a failed unit is one line (≤ 300 characters) naming the step, the unit, the
cause and the step log; which errors are retried. Pure: no CASA."""

from __future__ import annotations

import errno

from atarchive.errors import (PermanentStepError, TemporaryStepError, error_cause, error_line, is_temporary,
                              transient_message)

LOG = "/data/atarchive-work/p001/2024-12-12-17:29:25-3f9a1c2e/logs/calibrate-LoA.log"

# What a CASA child prints when gaincal selects nothing: the CASA log (timestamps, SEVERE lines),
# then Python's traceback with ^^^^ markers — several KB.
CASA_LOG = "".join(
    f"2024-12-12 17:{i % 60:02d}:25\tINFO\tgaincal::::casa\t##### Begin Task: gaincal #####\n"
    f"2024-12-12 17:{i % 60:02d}:25\tINFO\tgaincal::::casa\tvis = '/work/fixed.ms' field = '0' spw = '0,1,2,3'\n"
    for i in range(30))
SEVERE = ("2024-12-12 17:30:01\tSEVERE\tgaincal::Calibrater::solve\tException Reported: No rows were selected\n"
          "2024-12-12 17:30:01\tSEVERE\tgaincal::::casa\tTask gaincal raised an exception of class RuntimeError "
          "with the following message: No rows were selected\n")
TRACEBACK = '''Traceback (most recent call last):
  File "/opt/atarchive/atarchive/casa/child.py", line 80, in _call
    result = getattr(mod, fn_name)(**c["kwargs"])
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/atarchive/atarchive/casa/calibrate.py", line 140, in calibrate
    res = calchain.run(vis=vis, field_ids=fids, flux_cals=flux_cals, targets=targets, refant=ref,
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/atarchive/atarchive/casa/calchain.py", line 126, in run
    t.gaincal(caltable=tab["G0"], field=field, spw=spw, solint="int", calmode="p", **common)
  File "/opt/venv/lib/python3.11/site-packages/casatasks/gaincal.py", line 291, in __call__
    task_result = _gaincal_t( _invocation_parameters['vis'],_invocation_parameters['caltable'],
                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/opt/venv/lib/python3.11/site-packages/casatasks/private/task_gaincal.py", line 246, in gaincal
    raise Exception(instance)
Exception: No rows were selected

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/casatasks/private/task_gaincal.py", line 250, in gaincal
    mycb.close()
    ~~~~~~~~~~^^
RuntimeError: No rows were selected in the MS /data/atarchive-work/p001/2024-12-12-17:29:25-3f9a1c2e/fixed.ms
'''


def test_casa_traceback_becomes_one_line_with_step_unit_cause_and_log():
    text = CASA_LOG + SEVERE + TRACEBACK + CASA_LOG
    assert len(text) > 5000
    line = error_line("calibrate", "LoA", text, LOG)
    assert line == ("calibrate LoA: RuntimeError: No rows were selected in the MS "
                    "/data/atarchive-work/p001/2024-12-12-17:29:25-3f9a1c2e/fixed.ms (log: " + LOG + ")")
    assert "\n" not in line and "^^^" not in line and "~~~" not in line and "Traceback" not in line


def test_a_long_cause_is_cut_never_the_step_unit_or_log_path():
    long_unit = "LoA-3c286-J1331+3030-" * 3
    text = "RuntimeError: " + "the visibilities of antenna 1a disagree with the model " * 20
    line = error_line("image", long_unit, text, LOG)
    assert len(line) == 300
    assert line.startswith(f"image {long_unit}: RuntimeError: the visibilities of antenna 1a")
    assert line.endswith(f"… (log: {LOG})")


def test_our_own_step_errors_keep_their_message_without_the_class_name():
    tb = ('Traceback (most recent call last):\n  File "x.py", line 3, in f\n    raise PermanentStepError(msg)\n'
          "    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
          "atarchive.errors.PermanentStepError: no B0 (bandpass) table: residual delays up to 600 ns on 7a, 3a "
          "decorrelate 2 MHz channels (28/45 baselines < 80 %): set steps.compress.chanbin = 1\n")
    line = error_line("calibrate", "", tb, LOG)
    assert line.startswith("calibrate: no B0 (bandpass) table: residual delays up to 600 ns on 7a, 3a")
    assert "set steps.compress.chanbin = 1 (log: " in line and "PermanentStepError" not in line


def test_a_crashed_child_names_the_signal_not_its_log_tail():
    text = ("atarchive.casa.image:image: child process killed by signal SIGKILL without a result\n"
            + CASA_LOG + SEVERE)
    assert error_cause(text) == "atarchive.casa.image:image: child process killed by signal SIGKILL without a result"


def test_casa_log_noise_is_stripped_from_a_cause_without_traceback():
    assert error_cause("\n   ^^^^^\n" + SEVERE) == "No rows were selected"


def test_retry_only_what_can_go_away():
    # a work root that is a file, a missing file, a bug, bad data: once
    assert not is_temporary(NotADirectoryError(errno.ENOTDIR, "Not a directory", "/srv/work"))
    assert not is_temporary(FileNotFoundError(errno.ENOENT, "No such file or directory"))
    assert not is_temporary(KeyError("spw"))
    assert not is_temporary(PermanentStepError("truncated file"))
    # disk full, a read-only remount, a CASA crash or timeout: retried
    assert is_temporary(OSError(errno.ENOSPC, "No space left on device"))
    assert is_temporary(OSError(errno.EROFS, "Read-only file system"))
    assert is_temporary(TemporaryStepError("child process killed by signal SIGKILL"))
    # an exception of a CASA child: only a locked table is worth another try
    assert transient_message("RuntimeError", "Table /w/fixed.ms cannot be locked: it is used by another process")
    assert transient_message("RuntimeError", "Error (Resource temporarily unavailable) when acquiring lock on x")
    assert not transient_message("RuntimeError", "No rows were selected")
    assert not transient_message("ValueError", "solint 'bogus' is not a time")


def test_long_paths_in_the_cause_give_way_to_the_cause():
    f = "/mnt/datax-netStorage-40G/projects/p002/2024-12-13-01:00:00/uvh5_60647_62965_9760406_3c286_0001/" \
        "LoA.C0352/uvh5_60647_62965_9760406_3c286_0001.uvh5"
    text = f"{f}: cannot read uvh5 data: Can't synchronously read data (filter returned failure during read)"
    line = error_line("copy", "uvh5_60647_62965_9760406_3c286_0001/LoA", text, LOG)
    assert len(line) <= 300 and line.endswith(f" (log: {LOG})")
    assert ("copy uvh5_60647_62965_9760406_3c286_0001/LoA: …/uvh5_60647_62965_9760406_3c286_0001.uvh5: cannot read "
            "uvh5 data: Can't synchronously read data (filter returned failure during read)") in line


def test_a_note_is_kept_whole_like_the_log_path():
    line = error_line("image", "LoA", "x" * 400, LOG, note="after 3 attempts")
    assert len(line) == 300 and line.endswith(f"… (after 3 attempts) (log: {LOG})")
