from services.detection.server import main

main()
