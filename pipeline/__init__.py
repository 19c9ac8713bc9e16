"""Human-centric spatio-temporal action localization (Jiang et al., AVA 2018) as a Snakemake pipeline."""

__version__ = "0.1.0"
