"""Progress bars: tqdm on stderr when it is a terminal, silent in scripts and CI."""

import sys


class NoProgress:
    def __call__(self, k):
        pass

    def close(self):
        pass


def progress_bar(total, desc, unit="frame"):
    """A callable advancing a bar by k, with close(). Bars opened while another is open (frames
    within a batch's sequences) stack below it."""
    if not sys.stderr.isatty():
        return NoProgress()
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

    class _Bar:
        def __call__(self, k):
            bar.update(k)

        def close(self):
            bar.close()

    return _Bar()
