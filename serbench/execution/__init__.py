"""Where and under which limits a study runs: the limits in force (:mod:`.limits`), a
supervised worker (:mod:`.supervisor`, :mod:`.isolate`), and containers (:mod:`.docker`)."""
