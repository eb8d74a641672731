"""Fine-tuning: training and prediction (:mod:`.fit`) and the frozen-feature cache
(:mod:`.features`)."""
