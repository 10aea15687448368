"""FlashPortrait reference model trained on a synthetic portrait world."""
