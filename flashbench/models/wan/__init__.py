"""diffusers' Wan2.1 transformer as a layered denoiser, the ``wan`` model, and our steppers as diffusers hooks."""
