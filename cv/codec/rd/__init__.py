"""Rate-distortion work: classic baselines (JPEG, H.264, MPEG-4), measurement, equal-rate
verdicts, tables and plots."""
