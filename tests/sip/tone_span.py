#!/usr/bin/env python3
"""How long a tone lasts in a WAV file, and where (stdlib only).

    tone_span.py FILE.wav HZ          prints "START_S DURATION_S FREQ_HZ"

The file is cut into 20 ms frames; a frame "holds" HZ when the Goertzel
power at HZ is at least half of the frame's energy (a clean tone is close
to all of it; silence and other tones are not). The longest run of such
frames is reported: its start and length in seconds, and the frequency
measured by rising zero crossings inside it (its first and last frame left
out, by tone_freq.py's method). Prints "0 0 0" when no frame holds the
tone. First channel only; the WAV formats tone_freq.py reads.
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tone_freq import read_wav, zero_crossing_freq  # noqa: E402


def holds(frame, hz, rate):
    k = 2.0 * math.cos(2.0 * math.pi * hz / rate)
    s1 = s2 = 0.0
    energy = 0.0
    for x in frame:
        s0 = x + k * s1 - s2
        s2, s1 = s1, s0
        energy += x * x
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    # A pure tone of amplitude A over N samples: power = (A N / 2)^2 and
    # energy = A^2 N / 2, so power / (energy N / 2) = 1.
    return energy > len(frame) * 100.0 and power / (energy * len(frame) / 2.0) >= 0.5


def zc_freq(x, rate):
    """tone_freq.py's zero-crossing measure, DC removed, hysteresis at 10 %
    of the peak; 0 when there is no tone."""
    if len(x) < 2:
        return 0.0
    mean = sum(x) / len(x)
    x = [v - mean for v in x]
    return zero_crossing_freq(x, rate, 0.1 * max(abs(v) for v in x)) or 0.0


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    samples, rate = read_wav(sys.argv[1])
    hz = float(sys.argv[2])
    step = rate // 50
    flags = [holds(samples[i : i + step], hz, rate) for i in range(0, len(samples) - step + 1, step)]
    best, start, run_start = 0, 0, None
    for i, f in enumerate(flags + [False]):
        if f and run_start is None:
            run_start = i
        elif not f and run_start is not None:
            if i - run_start > best:
                best, start = i - run_start, run_start
            run_start = None
    if best == 0:
        print("0 0 0")
        return
    inner = samples[(start + 1) * step : (start + best - 1) * step]
    print("%.2f %.2f %.2f" % (start * step / rate, best * step / rate, zc_freq(inner, rate)))


if __name__ == "__main__":
    main()
