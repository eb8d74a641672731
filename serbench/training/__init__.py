"""Fine-tuning: training, prediction and their batches (:mod:`.fit`), and the frozen-feature
cache -- keys, memory, disk spill, a study's cache folder (:mod:`.features`)."""
