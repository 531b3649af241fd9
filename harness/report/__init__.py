"""From stored results to what a reader sees: collect, render, figures, compare, build, publish."""
