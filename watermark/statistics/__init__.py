"""The statistics of detection: p-values, permutation and sequential tests, the alignment kernels
and their numba twins, span scans, and calibration."""
