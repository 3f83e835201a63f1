"""cv.lib package."""
