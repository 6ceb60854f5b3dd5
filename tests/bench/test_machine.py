"""The machine-speed probe printed beside every latency table."""

import math

from hyperrec.bench.machine import MachineSpeed, measure_machine


def test_the_probe_measures_the_interpreter_and_the_arithmetic_and_says_so_in_one_line():
    speed = measure_machine()
    assert speed.python_loop_ms > 0 and speed.matmul_ms > 0 and math.isfinite(speed.load_average) and speed.cpus >= 1
    line = MachineSpeed(python_loop_ms=80.0, matmul_ms=0.4, load_average=1.25, cpus=2).line()
    assert line == "machine: 2M-step Python loop 80 ms, 256^3 matmul 0.40 ms, load average 1.2, 2 CPUs"
    assert set(speed.row()) == {"python_loop_ms", "matmul_ms", "load_average", "cpus"}
