"""The current nodule demo on the earlier (classic) phantoms: is a lower demo CPM the harder phantoms
or a code regression?  ``.venv/bin/python benchmarks/demo_classic_phantoms.py [OUT]``"""
import functools, sys
import voxelstream_ct.phantom as ph
import voxelstream_ct.phantom_datasets as pd
orig = pd.generate_dataset
patched = functools.partial(orig, realistic=False)
ph.generate_dataset = patched
pd.generate_dataset = patched
from voxelstream.cli.main import main
sys.exit(main(["nodules", "demo", "--out", sys.argv[1] if len(sys.argv) > 1 else "/tmp/classic-demo"]))
