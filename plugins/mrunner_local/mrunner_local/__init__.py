"""The local backend of mrunner: experiments run as subprocesses of this machine."""
