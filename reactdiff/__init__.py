"""ReactDiff at scale: multiple-appropriate facial reaction generation, trained and evaluated on clusters."""

__version__ = "0.1.0"
