"""FERbench harness: table specs -> cells -> results -> frame -> statistics -> report."""
