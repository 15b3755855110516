"""Video -> dataset directory: decoding, landmarks, masks, background plate, head tracking, audio features."""
