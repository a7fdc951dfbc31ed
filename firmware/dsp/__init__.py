# On-device signal processing: one stage per file (emg_*, pelvis, gait). No hardware, no radio.
