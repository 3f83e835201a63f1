"""cv.data package."""
