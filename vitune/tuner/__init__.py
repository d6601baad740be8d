"""`vitune tune`: an Optuna search per (GPU, tuning bucket), its winners written to configs YAML.

tune.py runs it: plan.py plans each bucket's study (studies.py: storage, names, reading
back), search_loop.py picks configs and pipeline.py takes them to the GPU (compile_pool.py
compiles ahead, trial.py checks and times each in a worker process of isolation.py),
crown.py re-times the best and measures the peers; with several GPUs, search_processes.py
runs one more search process per GPU and bucket_board.py says who searches which bucket.
"""
