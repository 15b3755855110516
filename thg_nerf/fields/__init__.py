"""Neural fields: hash-grid encodings, audio encoder, head and torso fields."""
