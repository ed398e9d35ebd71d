package io.flowableworker.testserver;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/** A real Flowable engine with its REST APIs; configuration lives in application.properties. */
@SpringBootApplication
public class FlowableTestServer {
    public static void main(String[] args) {
        SpringApplication.run(FlowableTestServer.class, args);
    }
}
