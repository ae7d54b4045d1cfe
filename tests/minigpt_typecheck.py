"""The runtime type checker the tests apply to all of minigpt (see conftest.py).

beartype, with the numeric tower of PEP 484 on: an ``int`` is accepted where a ``float`` is
annotated (``atol=0``), as every Python type checker accepts it.
"""

from beartype import BeartypeConf, beartype

checker = beartype(conf=BeartypeConf(is_pep484_tower=True))
