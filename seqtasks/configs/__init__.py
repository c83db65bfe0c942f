"""The recommended configs, installed with seqtasks: NAME.toml is `--config NAME` (seqtasks.config.find_config).

demo-TASK.toml is the recipe `seqtasks train TASK` uses when given no data (the bundled demo data);
the others are tuned for a dataset and used by benchmarks/ (TASK-DATASET-MODEL.toml).
"""
