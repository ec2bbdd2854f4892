"""``taylorch bench``: compare optimization methods and their peers side by side."""
