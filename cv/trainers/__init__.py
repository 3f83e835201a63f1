"""cv.trainers package."""
