"""cv.configs package."""
