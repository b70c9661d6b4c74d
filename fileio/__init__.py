"""Files written whole or not at all, and the clearing of what killed writers left (atomic.py); model files
that run as code, loaded one way (programs.py)."""
