"""Command-line programs (console scripts `tf-minilm-*`, also `bin/*`).

Each module defines its flags in a function (importing parses nothing) and a
`body` that does the work; `program.run` is the skeleton they share (noise
filter, flag parsing, one mapping of outcomes to exit codes).
"""
