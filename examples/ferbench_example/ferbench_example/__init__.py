"""An example FERbench method plugin; its family lives in :mod:`ferbench_example.smallcnn`."""
