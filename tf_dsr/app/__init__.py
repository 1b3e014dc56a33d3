"""The application on top of the library: the `tf-dsr` command line, the
comparison of methods on the bundled digits, its tables and plots, and
latency measurement. The library (everything else in `tf_dsr`) never
imports this package.
"""
