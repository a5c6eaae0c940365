"""The xML joint explainer + classifier (Rio-Torto, Fernandes and Teixeira, PRL 2020).

explainer.py: the U-Net; model.py: the gated classifier and gate placement; losses.py: the
losses as pure functions; train.py: the config and the three-phase trainer; method.py: the
``joint`` method that reads the model's own explanation.
"""
