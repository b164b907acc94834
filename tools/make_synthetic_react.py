"""Write a synthetic REACT dataset: `python tools/make_synthetic_react.py --out DIR` (see --help)."""
import sys; from pathlib import Path  # noqa: E401,E702
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reactdiff.data.synthetic.cli import main  # noqa: E402
if __name__ == "__main__": raise SystemExit(main())  # noqa: E701
