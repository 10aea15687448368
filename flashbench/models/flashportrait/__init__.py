"""The released FlashPortrait on diffusers' Wan2.1-I2V: NFEB, its weights, PD-FGC and the face tracker."""
