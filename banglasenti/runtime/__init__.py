"""Process plumbing shared by steps and commands: command lines, progress and logs, KFP support, private APIs."""
