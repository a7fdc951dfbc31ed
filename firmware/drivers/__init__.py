# Register-level chip drivers; each takes its bus objects as arguments (board/hw.py builds them).
