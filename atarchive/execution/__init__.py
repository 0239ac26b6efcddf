"""Running units: where (executors), in which process (children), by whom (ownership), and the one
path that executes a batch of units and installs what they made (batch)."""
