"""The choices the command line offers, kept apart so that parsing arguments needs no TensorFlow.

`kerasnets --help` and argument errors import this module and `recipes`/`precision`
(whose Keras use is deferred to their functions), never TensorFlow: importing it
takes seconds. `training` and `export` validate against the same tuples.
"""

DISTRIBUTIONS = ("auto", "mirrored", "multi-worker", "off")
EXPORT_FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
