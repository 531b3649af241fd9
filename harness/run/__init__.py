"""Running cells: plan a table into cells, check overrides, version the code, execute them."""
