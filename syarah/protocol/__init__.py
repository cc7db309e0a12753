"""What arrives and what leaves: typed, validated, and free of I/O."""
