"""How a sequence is coded: the codec plan (options validated once), the keyframe/window/lane
schedule the model walks, and the frame coders — encode and decode of a frame side by side."""
