"""Neural fields: hash-grid encodings, the audio encoder, the head field, the torso layer and the full model."""
