"""Command-line programs (console scripts `tf-minilm-*`, also `bin/*`).

Each module defines its flags in `define_flags()` (importing parses nothing)
and `main()`, which installs the start-up noise filter, parses the flags and
runs.
"""
