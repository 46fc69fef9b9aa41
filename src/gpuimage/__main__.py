"""``python -m gpuimage``: the command line of ``gpuimage.cli`` (imported only when run as a script)."""

if __name__ == "__main__":
    from gpuimage.cli import main

    raise SystemExit(main())
