"""Domain classification: YAML domain definitions, sentence embeddings and the classifier.

Importing this package is cheap; torch and transformers load when an ``Embedder`` is built.
"""

from gateway.classify.classifier import Classification, Classifier
from gateway.classify.definitions import DomainDefinition, DomainSet, load_domains

__all__ = ["Classification", "Classifier", "DomainDefinition", "DomainSet", "load_domains"]
