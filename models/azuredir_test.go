package models

import "os"

func azureDirOverride() string { return os.Getenv("FOREWARM_AZURE_SAMPLE") }
