"""cv.models package."""
