"""One module per larger verb of the edge-inspector command: its parser and what it does."""
