"""The report's pieces (used by the ``report`` stage only): tables written as Markdown and as HTML
pages, Table I's rows, the figures, the benchmark summary, and the names of the files it writes."""
